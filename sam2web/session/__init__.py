"""Layer 4, per process and per user: the engine every user shares, one user's session
(the facade the page and the command line use), qualities, project files, batch fitting,
corrections and the behaviour setup."""
