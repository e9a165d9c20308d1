"""HTTP client of the items API (the testkit's REST simulator, `restsim`): authentication, base URL and error
handling. Returns raw JSON; no Fivetran formatting and no retry logic here (seed 001's `api.py`)."""
from email.utils import parsedate_to_datetime

import requests

TIMEOUT_SECONDS = 30


class ApiError(Exception):
    """A request that failed: a status the API answered with, or no answer at all."""

    def __init__(self, url, params, message):
        super().__init__(message)
        self.url = url
        self.params = params


def get_headers(configuration):
    # The token stays in this header: never logged, never put in an error.
    return {"Authorization": f"Bearer {configuration['bearer_token']}", "Accept": "application/json"}


def get(configuration, path, params):
    url = configuration["base_url"].rstrip("/") + path
    try:
        response = requests.get(url, params=params, headers=get_headers(configuration), timeout=TIMEOUT_SECONDS)
    except requests.RequestException as e:
        raise ApiError(url, params, f"no answer: {type(e).__name__}") from None
    if response.status_code != 200:
        raise ApiError(url, params, f"HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


def server_now(configuration):
    """The API's clock (its `Date` header): where a sync's cursors start, since ours may differ from the API's."""
    url = configuration["base_url"].rstrip("/") + "/items/deleted"
    try:
        response = requests.get(url, params={"limit": 1}, headers=get_headers(configuration), timeout=TIMEOUT_SECONDS)
    except requests.RequestException as e:
        raise ApiError(url, {}, f"no answer: {type(e).__name__}") from None
    if response.status_code != 200 or "Date" not in response.headers:
        raise ApiError(url, {}, f"HTTP {response.status_code} without the API's clock")
    return parsedate_to_datetime(response.headers["Date"])
