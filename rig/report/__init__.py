"""Session and subject reports: HTML pages with matplotlib PNG plots."""
