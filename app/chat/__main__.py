"""`python -m app.chat`: the terminal client (see `app.chat.cli`)."""

from app.chat.cli import main

raise SystemExit(main())
