"""Layer 3, outputs: the files a run writes (tables, masks, COCO, label stacks), the overlay
drawing and video, and frames as the page shows them."""
