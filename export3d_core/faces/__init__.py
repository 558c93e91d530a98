"""Reading faces: the attribute regressor (expression β, pose, identity from an image).

It sits below `eval` and `train` because both use it (the evaluation's AED / APD / identity
similarity, the face-feature loss of training) and the editor's expression estimate loads it.
"""
