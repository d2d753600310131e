"""What the report is made of: the data read back from prepare and scores (data), its tables (tables),
figures (figures) and the HTML page (html). Imports files, method, models and embedding, never stages."""
