"""The export direction: the `export_csv_file` job type, its VQL query, its sources and upload."""
