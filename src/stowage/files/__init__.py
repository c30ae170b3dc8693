"""Files and folders: the user's tree, uploads, downloads, trash."""
