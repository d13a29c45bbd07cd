import os

print('token set' if os.environ.get('TOKEN') else 'no token')
