"""API plumbing shared by every app: errors, pagination, references, base views."""
