"""Method-neutral fitting routines (k-means, …) that several methods and commands share."""
