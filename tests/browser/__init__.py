"""Tests in a real browser (headless Chromium, `tests.browser.chromium`)."""
