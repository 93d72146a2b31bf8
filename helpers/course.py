"""Course-wide constants: the ONE place that names the GitHub repository and ref.

``tools/course.py`` writes these into every notebook's setup cell, the Colab badges and the README, so a fork only
edits this file and runs ``make course``. This module must import nothing outside the standard library.
"""

COURSE_TITLE = "Explaining Vision Models: a hands-on course on XAI for CNNs and Vision Transformers"
GITHUB_SLUG = "xai-course/explaining-vision-models"  # owner/name on GitHub
GITHUB_REF = "main"  # branch or tag the notebooks clone and the badges open
COLAB_DIR = "/content/explaining-vision-models"  # where the setup cell clones the course on Colab
