"""The public-opinion monitor (舆情监测): feeds polled politely, items stored once and clustered into stories,
scored (moderation categories, negativity, mentions of our organisations, workers' needs), matched against
keyword rules, and alerted once per story per rule per window. Its tasks run on a queue of their own.

It stands between the publisher's interfaces (which offer it) and its delivery layer; see ``monitor/README.md``.
"""
