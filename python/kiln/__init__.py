"""kiln"""
