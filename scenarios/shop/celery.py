"""The app scenarios/celery-shop.toml measures: three tasks a shop publishes with delay().

taskbench replaces broker_url with each case's URL; everything else here is used as written.
"""

from celery import Celery

app = Celery("shop")
app.conf.task_serializer = "json"


@app.task(name="shop.tasks.send_email")
def send_email(to, subject):
    return f"sent {subject!r} to {to}"


@app.task(name="shop.tasks.charge")
def charge(cents, currency="EUR"):
    return f"charged {cents} {currency}"


@app.task(name="shop.tasks.resize_image")
def resize_image(path, width):
    return f"resized {path} to {width}px"
