"""Streamlit front end of AML-KD Explorer: thin pages over ``engine``."""
