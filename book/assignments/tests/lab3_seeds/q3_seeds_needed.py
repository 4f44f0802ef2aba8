OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q3_seeds_needed',
    'points': 2,
    'suites': [   {   'cases': [{'code': '>>> assert isinstance(seeds_needed(0.01, 0.01), int) and seeds_needed(0.01, 0.01) >= 2\n', 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
