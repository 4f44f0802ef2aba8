OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q3_count_paths',
    'points': 3,
    'suites': [   {   'cases': [   {   'code': '>>> _a = torch.ones(2, 3, dtype=torch.bool)\n>>> _b = torch.ones(1, 2, dtype=torch.bool)\n>>> assert float(count_paths([_a, _b])) == 6.0\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
