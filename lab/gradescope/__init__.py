"""calclab on grading platforms: Gradescope's autograder contract (results.json, the bundle) and the
pieces GitHub Classroom's workflow shares with it (running lab/grade on one submission)."""
