"""Feedback loop: store of misclassification reports -> next dataset version -> retrain triggers."""
