"""Platform adapters (one per channel kind) and the sandboxes that reproduce each platform's protocol."""
