"""Framework integrations. Each module imports its framework: import only the one you use."""
