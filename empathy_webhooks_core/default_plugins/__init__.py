"""The core's own plugins, registered through the same call as third-party ones."""
