"""What the guides tell people to configure must be safe to copy."""

from __future__ import annotations

import re

from app.store.db import PROJECT_ROOT


def test_the_better_auth_tier_field_cannot_be_written_by_users() -> None:
    """Without `input: false`, `POST /api/auth/update-user {"tier": "pro"}` picks one's plan."""
    guide = (PROJECT_ROOT / "docs" / "identity.md").read_text()
    fields = re.findall(r"tier: \{[^}]*\}", guide)
    assert fields, "docs/identity.md no longer shows the tier field"
    assert all("input: false" in field for field in fields), fields
