"""Policy administration: what happens to a policy besides its daily pricing. Today claims
(`claims`: what a claim pays, filing one); enrolment, terms, renewal and premiums land here.
"""
