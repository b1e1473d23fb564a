"""Reading and writing scans and masks in every format, with the checks that refuse damaged files."""
