"""Training recipes, one module per stage (torchtune-style)."""
