"""HTTP routes besides the webhook: operations and the read-only report API."""
