"""Built-in ``alp`` sub-commands (registered through the same hook as plugin commands)."""
