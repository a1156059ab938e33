"""sam2web web app entry point (what Hugging Face Spaces and `python app.py` run)."""

import logging

from sam2web.ui import launch

if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    launch()
