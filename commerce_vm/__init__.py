"""commerce_vm"""
