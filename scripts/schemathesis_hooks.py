"""schemathesis hooks: the proxy answers 503 by design when the card is busy, disconnected or has
refused the password, and documents it; what it must never answer is 500 (an internal error)."""
import schemathesis


@schemathesis.check
def no_internal_error(ctx, response, case):
    if response.status_code == 500:
        raise AssertionError(f"500 Internal Server Error: {response.text[:300]}")
