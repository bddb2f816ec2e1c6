"""Built-in plugins: every module here is registered through the public hooks at start-up."""
