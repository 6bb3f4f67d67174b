"""The instructor's grader of the flowlab course (never released; see ``autograder/README.md``).

It lives in the course folder it grades (``autograder/``) and drives the student package from
outside: ``flowlab`` never imports it, and the student release copies ``flowlab`` whole.

    course       where the course lives: assignments, their notebooks, cases and references
    cases        what an assignment grades: functions, test cases, wrong answers, mutations
    references   ``flowlab references``: hidden and public expected outputs
    release      ``flowlab release``: the student bundle (library copied whole, graded functions
                 stubbed) and the student notebooks; ``stubs`` and ``leaks`` serve it
    grade        ``flowlab grade``: phase 1 in the sandbox (``sandbox``, ``allowlist``, ``jail``), phase 2 on the
                 host (``scoring``, ``feedback``, ``gradebook``); ``submissions`` finds the work;
                 ``results`` saves each result as it finishes (resume), ``progress`` shows how far
                 the batch is, ``batch`` runs the jobs and stops them on Ctrl-C
    rehearse     ``flowlab rehearse``: the solutions against the student release, timed
    commands     the ``flowlab`` subcommands above, registered through the ``flowlab.commands``
                 entry-point group

Importing this package is cheap (no torch): ``flowlab_grader.jail`` runs before privileges are
dropped and must start fast.
"""
