"""Companies, users, API enablement, keys, IP whitelist, signed links, rate limits, audit."""
