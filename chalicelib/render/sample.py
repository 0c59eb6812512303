"""A realistic, complete template context, for validation, previews and docs."""

from __future__ import annotations

from typing import Any

SAMPLE_CONTEXT: dict[str, Any] = {
    "customer": {
        "id": "c-42",
        "name": "Ana Souza",
        "email": "ana@example.com",
        "phone": "+14155550123",
        "locale": "en-US",
        "timezone": "America/New_York",
        "attributes": {"tier": "gold"},
        "order_count": 3,
        "total_spent": 412.75,
    },
    "order": {
        "id": "o-9",
        "total": 129.50,
        "currency": "USD",
        "category": "appliance",
        "categories": ["appliance"],
        "items": [
            {
                "sku": "KX-200",
                "name": "Kettle",
                "category": "appliance",
                "quantity": 1,
                "price": 129.50,
            }
        ],
    },
    "campaign": {"id": "delivery-checkin", "name": "Delivery check-in"},
    "step": {"id": "checkin"},
    "links": {
        "survey": "https://aftercare.example.com/s/Zx81kQ",
        "unsubscribe": "https://aftercare.example.com/u/Zx81kQ",
    },
    "survey": {"kind": "csat", "question": "How happy are you with your kettle, from 1 to 5?"},
}
