"""DynamoDB persistence: PynamoDB models and small repositories."""
