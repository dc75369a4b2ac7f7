"""Meta's WhatsApp Cloud API as a channel: the Graph API client (:mod:`.graph`), what is
sent (:mod:`.outbound`) and what Meta's webhook brings (:mod:`.inbound`)."""
