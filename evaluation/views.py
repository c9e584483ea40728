"""Views for prompt sets, generations, blind pairwise campaigns, ratings, offline metrics, fairness
slices and regression gates.
"""
