import io
import urllib.error
import urllib.request

import pytest


@pytest.fixture
def offline(monkeypatch):
    """Every download fails as it does without a network; the URLs asked for are recorded."""
    asked = []

    def refuse(url, *args, **kwargs):
        asked.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return asked


@pytest.fixture
def serve(monkeypatch):
    """Downloads answer from `files` (URL -> bytes); the URLs asked for are recorded."""
    files, asked = {}, []

    def answer(url, *args, **kwargs):
        asked.append(url)
        return io.BytesIO(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", answer)
    return files, asked
