"""The paper's reproductions: `toy` (the low-dimensional experiments) and `images` (Table 1's models)."""
