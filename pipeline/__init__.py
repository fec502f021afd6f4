"""Pipeline definition and configuration for bookcover."""
