"""The paper's experiments, each a function a command calls."""
