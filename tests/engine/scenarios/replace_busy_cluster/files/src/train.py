import time

time.sleep(300)  # stays active until cancelled
