"""``dwcube serve``: a web app over dwcube's archives, and an online prediction service."""
