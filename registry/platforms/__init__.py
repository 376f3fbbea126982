"""Platform keys: the credentials of platforms that verify in bulk (docs/contract.md, "Bulk verification")."""
