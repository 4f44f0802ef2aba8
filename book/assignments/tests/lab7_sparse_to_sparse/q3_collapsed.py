OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q3_collapsed',
    'points': 2,
    'suites': [   {   'cases': [{'code': '>>> assert collapsed([torch.ones(3, 4, dtype=torch.bool), torch.zeros(2, 3, dtype=torch.bool)]) is True\n', 'hidden': False, 'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
