OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q3_required_width',
    'points': 3,
    'suites': [{'cases': [{'code': '>>> assert required_width(0.5, 0.5, 1) == 1\n', 'hidden': False, 'locked': False}], 'scored': True, 'setup': '', 'teardown': '', 'type': 'doctest'}]}
