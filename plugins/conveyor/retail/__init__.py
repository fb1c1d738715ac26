"""retail_data_generator and inbound_to_stage: generated retail files, inbound -> stage + archive."""
