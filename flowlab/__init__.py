"""flowlab: flow matching for teaching."""
