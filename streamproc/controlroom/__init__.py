"""Control Room real-time API (API Task "hotbot"): client, typed values, errors."""
