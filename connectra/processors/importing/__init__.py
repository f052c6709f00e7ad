"""The import direction: the `insert_csv_file` job type and the stages a CSV file goes through."""
