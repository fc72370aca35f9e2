"""Front ends: the command line, the headless printer and the Textual app."""
