OK_FORMAT = True

test = {   'all_or_nothing': True,
    'name': 'q2_gadget',
    'points': 2,
    'suites': [   {   'cases': [   {   'code': '>>> _wp, _wm = gadget(torch.tensor([1.0, -2.0]), torch.tensor([3.0, 4.0]), torch.ones(2), torch.ones(2))\n'
                                               '>>> assert float(_wp) == 3.0 and float(_wm) == -8.0\n',
                                       'hidden': False,
                                       'locked': False}],
                      'scored': True,
                      'setup': '',
                      'teardown': '',
                      'type': 'doctest'}]}
