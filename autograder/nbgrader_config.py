"""nbgrader configuration of the flowlab course (this folder is the course root).

flowlab drives nbgrader itself: ``flowlab release`` runs ``nbgrader generate_assignment`` on a
temporary copy of this folder (so that no gradebook or release folder appears here), and
``flowlab grade`` writes scores with ``nbgrader.api.Gradebook``. You can also run ``nbgrader``
commands in this folder yourself; they read the settings below.

Markers in source notebooks (nbgrader's defaults): ``### BEGIN SOLUTION`` / ``### END SOLUTION``
in solution cells, ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` in grade cells.
"""
c = get_config()  # noqa: F821 (nbgrader defines get_config when it reads this file)

c.CourseDirectory.course_id = "flowlab"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.py"]
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
